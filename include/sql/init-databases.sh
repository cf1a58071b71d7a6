#!/bin/bash
# Creates Airflow's metadata database and modelgate's registry database (docker-compose's Postgres).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE USER airflow WITH PASSWORD '${AIRFLOW_DB_PASSWORD}';
CREATE DATABASE airflow OWNER airflow;
CREATE USER modelgate WITH PASSWORD '${MODELGATE_DB_PASSWORD}';
CREATE DATABASE modelgate OWNER modelgate;
SQL
