# Easel's CPU image: the server, its playground page and the bundled demo models.
#   docker build -t easel:0.1.0 .
#   docker run -p 8080:8080 easel:0.1.0            # easel serve, embedded queue
# The CUDA variant: deploy/docker/cuda.Dockerfile.

# Build: dependencies (ONNX Runtime's CPU binaries: .npmrc skips its CUDA download), the
# TypeScript and the page; then only what runs is kept.
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3 sharp
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY web web
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json ./
COPY bin bin
COPY models models
# Non-root; its data directory (SQLite, outputs) is the one place it writes.
RUN useradd --uid 1000 --create-home easel && mkdir -p /app/.easel && chown easel /app/.easel
USER 1000
EXPOSE 8080 8081 8082
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s CMD node -e "fetch('http://127.0.0.1:8080/v2/health/live').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["node", "bin/easel.js"]
CMD ["serve"]
