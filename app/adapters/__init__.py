"""The outside world behind the kernel's ports: Docker, Caddy, Postgres and the host's firewall."""
