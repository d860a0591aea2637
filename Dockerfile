# One image for every Pinhole service; docker-compose.yml gives each service its command.
#
# BASE: a Debian bookworm image. The default is the usual slim Python image; any bookworm
# root file system works too (the tests import one made by debootstrap): without a Python
# of its own, the image takes Debian's python3 (3.11), and python3-dev to compile against.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# Debian's packages: iproute2/nftables/conntrack/procps (sysctl) for the firewall service and
# the clients' route, tinyproxy for the enterprise proxy, coturn for the TURN service, haproxy
# for the balancer in front of the cloud replicas (docker-compose.scale.yml).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      iproute2 nftables conntrack procps tinyproxy coturn haproxy \
      $(command -v python3 >/dev/null || echo python3 python3-venv) \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --uid 10001 --home-dir /var/lib/pinhole pinhole \
 && mkdir -p /var/lib/pinhole && chown pinhole:pinhole /var/lib/pinhole

# Python packages, pinned by constraints.txt (as `make venv` installs them). Wheels put in
# docker/wheelhouse/ are used instead of the package index (an offline build).
ENV PATH=/opt/pinhole/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/pinhole/src
COPY pyproject.toml constraints.txt ./
COPY docker/wheelhouse/ /tmp/wheelhouse/
RUN set -e; python3 -m venv /opt/pinhole; \
    if ls /tmp/wheelhouse/*.whl >/dev/null 2>&1; then \
      set -- --no-index --find-links /tmp/wheelhouse; fi; \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt; \
    pip install --no-cache-dir --disable-pip-version-check "$@" -c constraints.txt \
      setuptools wheel -r /tmp/requirements.txt; \
    rm -rf /tmp/wheelhouse /tmp/requirements.txt
COPY README.md setup.py ./
COPY wire wire
COPY edge edge
COPY cloud cloud
COPY client client
COPY media_node media_node
COPY hybrid_node hybrid_node
COPY lab lab
# setup.py compiles the media node's data plane (media_node/_plane.c). The compiler, libc's
# headers and, for Debian's python3, Python's (the python image has its own) are there for
# this step only: what was not in the base is purged in the same layer, so none of it stays.
# A host's in-place build (make venv) is not the image's: removed before compiling.
RUN set -e; \
    headers=$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))'); \
    build=; for pkg in gcc libc6-dev $(test -f "$headers/Python.h" || echo python3-dev); do \
      dpkg-query -W -f '${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed \
        || build="$build $pkg"; done; \
    if [ -n "$build" ]; then apt-get update; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $build; fi; \
    find . -name '*.so' -delete; \
    pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation .; \
    if [ -n "$build" ]; then apt-get purge -y --auto-remove \
      -o APT::AutoRemove::RecommendsImportant=false -o APT::AutoRemove::SuggestsImportant=false \
      $build; fi; \
    apt-get clean; rm -rf /var/lib/apt/lists/* build *.egg-info; \
    python3 -P -c 'import media_node._plane'  # the installed one, without the build tools

# Where a healthcheck (lab/health.py) keeps its previous answer, so that the next one is
# held while the service stays healthy: /dev/shm, a tmpfs of the container's own that each
# start makes afresh. pinhole-lab compose runs the same checks on the host, without it.
ENV PINHOLE_HEALTH_DIR=/dev/shm
# Services run as pinhole unless they need the network (the firewall, the proxy and the
# clients set their routes: docker-compose.yml runs those as root with NET_ADMIN).
USER pinhole
WORKDIR /var/lib/pinhole
# Alone (`docker run --rm pinhole`): a cloud and three media nodes on loopback and a narrated
# two-party call.
CMD ["pinhole-lab", "demo"]
