# Airflow 3.3 with modelgate's dependencies; dags/, plugins/ and include/ are mounted by docker-compose.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root pyproject.toml uv.lock README.md /opt/modelgate/
COPY --chown=airflow:root plugins /opt/modelgate/plugins
RUN pip install --no-cache-dir /opt/modelgate
