// The dashboard's build: `npm run build` writes the bundle into the Python package (api/ui_dist),
// where FastAPI serves it at /ui. Filenames carry content hashes, so the output is reproducible.
import { defineConfig } from "vitest/config";

export default defineConfig({
  base: "/ui/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "../api/ui_dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    reportCompressedSize: true,
  },
  // `npm run dev`: the page on :5173 with hot reload, /v1 forwarded to a running `make run`.
  server: { proxy: { "/v1": "http://127.0.0.1:8000" } },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
