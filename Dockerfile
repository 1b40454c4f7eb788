# The webhook-gateway container image.
#
#   docker build -t webhook-gateway .
#   podman build --build-arg BASE_IMAGE=localhost/bookworm-python -t webhook-gateway .
#
# The base is any Debian-like image with python3 >= 3.11 and its venv module: the default
# python:3.12-slim (python3 in /usr/local/bin), or a local Debian bookworm made by
# deploy/local-base-image.sh (python3 3.11 in /usr/bin) where no registry can be reached.
# Both stages call plain `python3` and build the same /opt/venv, so either works.
#
# The running image: no compilers, no pip; user 10001:10001; writes only to /tmp and
# GATEWAY_DATA_DIR (/var/lib/webhook-gateway, a volume), so it runs with a read-only root
# filesystem; the gateway is PID 1 and handles SIGTERM itself (drains, exits 0).
ARG BASE_IMAGE=python:3.12-slim

# ---- build: every dependency as a wheel, then a venv installed from those wheels only ----
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/venv
# The dependencies first, from pyproject.toml alone: this layer stays cached while only the
# gateway's code changes.
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > requirements.txt \
 && /opt/venv/bin/pip wheel --wheel-dir /wheels -r requirements.txt
COPY README.md LICENSE ./
COPY gateway ./gateway
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-index --find-links /wheels webhook-gateway \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && /opt/venv/bin/webhook-gateway --version

# ---- run ----
FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
COPY config/gateway.yaml /etc/webhook-gateway/gateway.yaml
# A named user for tools like `id` and `ps`; the image refers to it by number only, so
# Kubernetes' runAsNonRoot can verify it.
RUN echo 'gateway:x:10001:10001:webhook-gateway:/var/lib/webhook-gateway:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'gateway:x:10001:' >> /etc/group \
 && mkdir -p /var/lib/webhook-gateway \
 && chown 10001:10001 /var/lib/webhook-gateway \
 && chmod 0750 /var/lib/webhook-gateway
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_DATA_DIR=/var/lib/webhook-gateway
# The working directory is the data volume, so a relative STORE_URL=sqlite:///gateway.db
# lands there too.
WORKDIR /var/lib/webhook-gateway
VOLUME ["/var/lib/webhook-gateway"]
USER 10001:10001
EXPOSE 8080 9102
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/webhook-gateway"]
CMD ["run", "--config", "/etc/webhook-gateway/gateway.yaml"]
