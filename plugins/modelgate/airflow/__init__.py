"""The glue that needs Airflow: DAG factories, run context, connections, notifiers."""
