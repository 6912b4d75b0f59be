# One image for every flowsweep container: the API, the one-shot migration and the Ray nodes
# (driver and workers must run the same Python, Ray and flowsweep versions).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY flowsweep ./flowsweep
COPY core ./core
COPY workers ./workers
COPY service ./service
COPY migrations ./migrations
COPY examples ./examples
RUN pip install ".[server,fast]" \
    && python -c "import flowsweep.core as c; c.warm_up()" \
    && useradd --create-home --uid 1000 flowsweep

USER flowsweep
WORKDIR /home/flowsweep
EXPOSE 8000
# docker-compose.yml overrides the command per service (db upgrade, ray start, serve).
CMD ["flowsweep", "serve"]
