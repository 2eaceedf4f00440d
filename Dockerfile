# The image of docker-compose.yaml: the official Apache Airflow image of the locked Airflow version, with the
# locked dependencies (requirements.lock) and this distribution (vdi, webhook_bridge, the Airflow provider).
# The tag's Airflow version is requirements.lock's (tests/test_compose.py checks it); its Python is the one CI
# runs the tests on.
FROM apache/airflow:3.3.2-python3.11

# As Airflow's docs do for extra requirements: install as the airflow user, pinning Airflow's own version so
# nothing can move it.
COPY --chown=airflow:0 requirements.lock /opt/airflow/requirements.lock
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.lock

# The repository's layout under AIRFLOW_HOME (/opt/airflow): the code finds include/ beside plugins/, as in a
# checkout; docker-compose.yaml mounts dags/ and include/ over the copies baked in here.
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 webhook_bridge /opt/airflow/webhook_bridge
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 include /opt/airflow/include
# auth/ holds the API user's password file (airflow-init writes it): a new named volume takes its owner.
RUN pip install --no-cache-dir --no-deps -e /opt/airflow && mkdir -p /opt/airflow/auth
