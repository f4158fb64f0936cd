// The page is built into dist/ (tauri.conf.json's frontendDist); Vitest runs the unit
// tests of src/ in happy-dom with the same JSX settings.
import { defineConfig } from "vitest/config";

export default defineConfig({
  base: "./",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // WebKitGTK 2.40+ (Debian 12) and WKWebView on macOS 12+.
    target: "safari15",
    // One small bundle: no module preload polyfill (it would need an inline script).
    modulePreload: { polyfill: false },
  },
  test: {
    environment: "happy-dom",
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
