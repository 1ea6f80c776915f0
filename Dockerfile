# The production image of every trail role: `trail serve` (API and console), the sink, the
# detector, the alert sink and the incident trigger (`consumers/*.py`). The server install only:
# no chDB and no local broker (a production deployment talks to a Kafka cluster, a ClickHouse
# server and PostgreSQL). Runs as an unprivileged user with a read-only root file system in mind:
# everything trail writes goes under TRAIL_DATA_DIR (/var/lib/trail, a volume).
FROM python:3.11-slim-bookworm

# WeasyPrint's Pango for PDF documents, and a Chinese font so Chinese documents render.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
      fonts-wqy-microhei fontconfig \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 trail \
 && useradd --system --uid 10001 --gid trail --home-dir /var/lib/trail --create-home --shell /usr/sbin/nologin trail

WORKDIR /opt/trail
COPY pyproject.toml README.md ./
COPY src ./src
COPY consumers ./consumers
RUN pip install --no-cache-dir '.[server]' && rm -rf /root/.cache

ENV TRAIL_MODE=production \
    TRAIL_DATA_DIR=/var/lib/trail \
    TRAIL_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
USER 10001:10001
VOLUME ["/var/lib/trail"]
EXPOSE 8080 9464
CMD ["trail", "serve"]
