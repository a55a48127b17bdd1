"""The web dashboard: server-rendered pages under /dashboard, signed in with GitHub or a token."""
