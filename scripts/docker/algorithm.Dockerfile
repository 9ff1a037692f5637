# An algorithm image: the v6nb base root filesystem plus wheels installed offline.
# Built with `docker build --network none`; the build context holds ./wheels (made on the host).
ARG BASE=v6nb/base:bookworm
FROM ${BASE} AS install
COPY wheels /wheels
ARG REQUIREMENTS="pandas numpy requests pyarrow openpyxl"
ARG PACKAGES="vantage6nb"
# Dependencies first, then the algorithm package(s) without deps (their deps are the list above).
RUN python3 -m pip install --no-index --find-links /wheels --break-system-packages \
        --disable-pip-version-check --no-warn-script-location ${REQUIREMENTS} \
 && python3 -m pip install --no-index --find-links /wheels --break-system-packages \
        --disable-pip-version-check --no-warn-script-location --no-deps ${PACKAGES}

FROM ${BASE}
COPY --from=install /usr/local/lib/ /usr/local/lib/
COPY --from=install /usr/local/bin/ /usr/local/bin/
RUN groupadd --gid 10001 algorithm && useradd --uid 10001 --gid 10001 --no-create-home \
        --home-dir /tmp --shell /usr/sbin/nologin algorithm
ARG PKG_NAME=""
ENV PKG_NAME=${PKG_NAME} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["python3", "-m", "vantage6nb.algorithm"]
