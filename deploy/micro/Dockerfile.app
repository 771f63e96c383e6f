# The stanza that puts seawall-micro in front of your application, in your own image. Copy the
# last part into your Dockerfile; this file is a complete example that builds as it is:
#   docker build -f deploy/micro/Dockerfile -t seawall-micro:0.1.0 .          # the carrier, once
#   docker build -f deploy/micro/Dockerfile.app --build-arg APP_IMAGE=nginx:1.27 -t nginx-micro .
# (Dockerfile.app.dockerignore sends no build context: everything comes from the two images.)
ARG APP_IMAGE=nginx:1.27
ARG MICRO_IMAGE=seawall-micro:0.1.0
FROM ${MICRO_IMAGE} AS seawall-micro

FROM ${APP_IMAGE}
# ---- the stanza -------------------------------------------------------------------------------
COPY --from=seawall-micro /seawall/seawall-micro /usr/local/bin/seawall-micro
COPY --from=seawall-micro /seawall/profile.toml /etc/seawall/micro.toml
# seawall-micro becomes PID 1 (it reaps orphans and forwards signals like tini) and starts the
# image's own entrypoint and command under the profile. If your image has an ENTRYPOINT, put it
# after `--`: ["/usr/local/bin/seawall-micro", "--profile", "/etc/seawall/micro.toml", "--",
# "/docker-entrypoint.sh"], and keep its CMD. Events are JSON lines on stderr (the container log)
# unless `--output FILE` or `--collector URL` says otherwise.
ENTRYPOINT ["/usr/local/bin/seawall-micro", "--profile", "/etc/seawall/micro.toml", "--"]
CMD ["nginx", "-g", "daemon off;"]
# -----------------------------------------------------------------------------------------------
