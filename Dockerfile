# modelgate's Airflow image: the official Airflow 3.3.2 image plus exactly the versions in uv.lock.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root pyproject.toml uv.lock README.md /opt/modelgate/
COPY --chown=airflow:root plugins /opt/modelgate/plugins
# uv turns the lock into a requirements file (no dev tools); pip installs it next to the image's Airflow,
# with Airflow pinned so nothing can move it; modelgate itself goes in last, with no dependency resolution.
RUN pip install --no-cache-dir "uv>=0.5,<1" \
 && cd /opt/modelgate \
 && uv export --frozen --no-dev --no-emit-project --no-hashes -o /tmp/requirements.txt \
 && pip install --no-cache-dir "apache-airflow==3.3.2" -r /tmp/requirements.txt \
 && pip install --no-cache-dir --no-deps /opt/modelgate \
 && rm /tmp/requirements.txt
