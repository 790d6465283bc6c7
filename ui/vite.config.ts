import { defineConfig } from "vite";

export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, assetsDir: "assets", chunkSizeWarningLimit: 2000 },
  server: { proxy: { "/api": "http://127.0.0.1:12800" } },
  test: { include: ["test/**/*.test.ts"] },
});
