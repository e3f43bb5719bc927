"""The dashboard's browser softphone (Talk page) and listen-in: a browser as a call leg."""
