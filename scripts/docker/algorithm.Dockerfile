# An algorithm image: the v6nb base root filesystem plus wheels installed offline.
# Built with `docker build --network none`; the context holds ./wheels (dependencies) and ./app
# (this repository's wheel), both made on the host.
ARG BASE=v6nb/base:bookworm
FROM ${BASE} AS deps
COPY wheels /wheels
ARG REQUIREMENTS="pandas numpy requests pyarrow openpyxl"
RUN python3 -m pip install --no-index --find-links /wheels --break-system-packages \
        --disable-pip-version-check --no-warn-script-location ${REQUIREMENTS}

FROM ${BASE}
# The large dependency layer first: a changed package reuses it from the build cache (and the registry).
COPY --from=deps /usr/local/lib/ /usr/local/lib/
COPY --from=deps /usr/local/bin/ /usr/local/bin/
RUN groupadd --gid 10001 algorithm && useradd --uid 10001 --gid 10001 --no-create-home \
        --home-dir /tmp --shell /usr/sbin/nologin algorithm
COPY app /app
RUN python3 -m pip install --no-index --break-system-packages --disable-pip-version-check \
        --no-warn-script-location --no-deps /app/*.whl && rm -rf /app
ARG PKG_NAME=""
ENV PKG_NAME=${PKG_NAME} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["python3", "-m", "vantage6nb.algorithm"]
