"""The arq worker: thin tasks over the domain services in app/."""
