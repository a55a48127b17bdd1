"""A revision's life: admission, fetch, build, deploy, go live; recovery after a dead worker."""
