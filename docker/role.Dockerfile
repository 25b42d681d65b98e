# aed-<role>: one image per pipeline role (data | train | hil), each with only the packages its steps import
# (pipelines/images.py ROLE_ROOTS and their closure in requirements.lock, pins and hashes unchanged) and the project.
# Build with `make images` (docker/build-images.sh), from the repository root:
#   DOCKER_BUILDKIT=1 docker build --network host -f docker/role.Dockerfile --build-arg ROLE=data \
#     --build-arg BASE_IMAGE=python:3.11.7-slim-bookworm [--secret id=extra_ca,src=CA.pem] -t REGISTRY/aed-data:TAG .
# BASE_IMAGE: the official python:3.11.7-slim-bookworm where a registry is reachable, or the Debian-made base of
# docker/debian-base.sh where none is. extra_ca: optional PEM bundle (a proxy's or company's CA) that pip trusts
# during the build only; it is a BuildKit secret, never written into a layer.
ARG BASE_IMAGE=python:3.11.7-slim-bookworm

# The role's requirement files, written by the image's own Python from the lock (standard library only).
FROM ${BASE_IMAGE} AS requirements
ARG ROLE
COPY requirements.lock pyproject.toml pipelines/images.py /src/
RUN python /src/images.py requirements "${ROLE}" /src /requirements

FROM ${BASE_IMAGE}
ARG ROLE
# Debian packages of the role (hil: the board flashing tools); none for data and train.
ARG APT_PACKAGES=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DVC_NO_ANALYTICS=1 \
    GX_ANALYTICS_ENABLED=False \
    TF_CPP_MIN_LOG_LEVEL=2 \
    NUMBA_CACHE_DIR=/tmp/numba \
    MPLCONFIGDIR=/tmp/matplotlib \
    PATH=/opt/venv/bin:$PATH

RUN if [ -n "$APT_PACKAGES" ]; then \
      apt-get update && apt-get install --yes --no-install-recommends $APT_PACKAGES \
      && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/*; \
    fi \
    && (getent group dialout >/dev/null || groupadd --system dialout) \
    && (getent group plugdev >/dev/null || groupadd --system plugdev) \
    # uid 1000, in dialout/plugdev to open a board's serial port and USB debugger when they are passed through.
    && useradd --create-home --uid 1000 --groups dialout,plugdev aed \
    && { [ -x /opt/venv/bin/python ] || python -m venv /opt/venv; }

# The lock's pins of this role, hash-checked, no resolution (--no-deps). REQUIRES_PYTHON_OVERRIDES (pipelines/
# images.py) are installed alone with --ignore-requires-python. Package test folders and bytecode are left out.
RUN --mount=type=bind,from=requirements,source=/requirements,target=/requirements \
    --mount=type=secret,id=extra_ca \
    if [ -s /run/secrets/extra_ca ]; then \
      cat /etc/ssl/certs/ca-certificates.crt /run/secrets/extra_ca > /tmp/ca.pem && export PIP_CERT=/tmp/ca.pem; \
    fi \
    # the venv's own setuptools is not the lock's: the lock installs its pin when the role needs it
    && pip uninstall --quiet --yes setuptools \
    && pip install --quiet --no-compile --require-hashes --no-deps -r /requirements/lock.txt \
    && if [ -s /requirements/overrides.txt ]; then \
      pip install --quiet --no-compile --require-hashes --no-deps --ignore-requires-python \
        -r /requirements/overrides.txt; \
    fi \
    && rm -f /tmp/ca.pem \
    && site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
    && find "$site" -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
    # The project: its sources in /opt/aed (on sys.path through a .pth file) and its metadata, whose requirements
    # are this role's roots, so that `pip check` checks the image against what its steps import.
    && mkdir -p "$site/aed_mlops.dist-info" \
    && cp /requirements/METADATA "$site/aed_mlops.dist-info/METADATA" \
    && echo pip > "$site/aed_mlops.dist-info/INSTALLER" \
    && : > "$site/aed_mlops.dist-info/RECORD" \
    && echo /opt/aed > "$site/aed_mlops.pth" \
    && printf '#!/opt/venv/bin/python\nimport sys\nfrom pipelines.cli import main\nsys.exit(main())\n' \
      > /opt/venv/bin/aed && chmod 755 /opt/venv/bin/aed \
    && pip check

# Relative paths of params.yaml (gate baselines, work/) resolve against this folder (pipelines.cli
# IMAGE_PROJECT_DIR); the approved gate baselines are here so that a containerised gate compares with them.
WORKDIR /opt/aed
COPY params.yaml ./
COPY aed ./aed
COPY components ./components
COPY hil_runner ./hil_runner
COPY pipelines ./pipelines
COPY baselines ./baselines
RUN chown aed:aed /opt/aed \
    # Fail the build, not the first task, when a step of the role does not import.
    && python -c "import sys; sys.path[:0] = ['/opt/aed']; from pipelines.aed_pipeline import SETTINGS, task_body; \
[task_body(s) for s, t in SETTINGS.items() if t.image == '${ROLE}']"

USER aed
CMD ["aed", "--help"]
