"""Everything that talks to GitHub: App auth, the REST client, webhook verification and parsing."""
