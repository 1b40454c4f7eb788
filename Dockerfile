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
# The gateway is compiled with mypyc (setup.py, GATEWAY_MYPYC=1; README "mypyc"): about a
# sixth less CPU per request. The build stage installs gcc for it (and the Python headers
# where the base lacks them); --build-arg MYPYC=0 builds the interpreted gateway instead.
#
# The running image: no compilers, no pip; user 10001:10001; writes only to /tmp and
# GATEWAY_DATA_DIR (/var/lib/webhook-gateway, a volume), so it runs with a read-only root
# filesystem; the gateway is PID 1 and handles SIGTERM itself (drains, exits 0).
ARG BASE_IMAGE=python:3.12-slim
ARG MYPYC=1

# ---- build: every dependency as a wheel, then a venv installed from those wheels only ----
FROM ${BASE_IMAGE} AS build
ARG MYPYC
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/venv
# The compiler for mypyc, in this stage only: gcc, and Python.h unless the base has it
# (python:3.12-slim does; Debian's python3 keeps it in libpython3-dev).
RUN if [ "$MYPYC" = 1 ]; then \
      packages="gcc libc6-dev"; \
      python3 -c 'import pathlib, sysconfig; assert pathlib.Path(sysconfig.get_paths()["include"], "Python.h").exists()' 2>/dev/null \
        || packages="$packages libpython3-dev"; \
      apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null; \
    fi
# The dependencies first, from pyproject.toml alone: this layer stays cached while only the
# gateway's code changes.
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > requirements.txt \
 && /opt/venv/bin/pip wheel --wheel-dir /wheels -r requirements.txt
COPY README.md LICENSE setup.py mypyc-modules.txt ./
COPY build_support ./build_support
COPY gateway ./gateway
# `--version` says which build it is: "(mypyc)" or "(interpreted)"; the grep fails a
# compiled build that came out interpreted.
RUN GATEWAY_MYPYC="$MYPYC" /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-index --find-links /wheels webhook-gateway \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && /opt/venv/bin/webhook-gateway --version \
 && { [ "$MYPYC" != 1 ] || /opt/venv/bin/webhook-gateway --version | grep -qF '(mypyc)'; }

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
