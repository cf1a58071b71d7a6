"""Deploying the champion: the local target and its HTTP server (Vertex AI to follow), canary, rollback."""
