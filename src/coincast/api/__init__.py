"""`coincast serve`: the HTTP API and the dashboard over a running live service.

Above live/, below cli/: app.py (the FastAPI app), reader.py (reads through the service's store),
routes.py (/v1), auth.py (tokens), metrics.py (Prometheus), guards.py (error bodies, body limit),
server.py (uvicorn beside the service's thread), static/ (the dashboard, uPlot vendored).
"""
