# Easel with ONNX Runtime's CUDA 12 binaries, for NVIDIA GPUs (the nvidia container runtime
# gives the driver). The bundled models ask for the cuda execution provider.
#   docker build -f deploy/docker/cuda.Dockerfile -t easel:0.1.0-cuda .
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3 sharp \
 && npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY web web
RUN npm run build && npm prune --omit=dev
COPY models models
# Every bundled model on the GPU: runtime.executionProvider cuda in its easel.yaml.
RUN for f in models/*/easel.yaml; do \
      if grep -q '^runtime:' "$f"; then sed -i 's/^runtime:/runtime:\n  executionProvider: cuda/' "$f"; else printf 'runtime:\n  executionProvider: cuda\n' >> "$f"; fi; \
    done

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04
ENV NODE_ENV=production
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY --from=build /app/models models
COPY package.json ./
COPY bin bin
RUN useradd --uid 1000 --create-home easel && mkdir -p /app/.easel && chown easel /app/.easel
USER 1000
EXPOSE 8080 8081 8082
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD node -e "fetch('http://127.0.0.1:8080/v2/health/live').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["node", "bin/easel.js"]
CMD ["serve"]
