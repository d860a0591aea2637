# One image for every Pinhole service; docker-compose.yml gives each service its command.
# Debian's packages: iproute2/nftables/conntrack for the firewall service, tinyproxy for the
# enterprise proxy, redis-server for the cloud's shared store.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      iproute2 nftables conntrack tinyproxy redis-server \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY wire wire
COPY cloud cloud
COPY client client
COPY media_node media_node
COPY hybrid_node hybrid_node
COPY lab lab
RUN pip install --no-cache-dir .

ENV PYTHONUNBUFFERED=1
CMD ["pinhole-lab", "--help"]
