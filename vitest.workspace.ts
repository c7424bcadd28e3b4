import { defineConfig } from "vitest/config"

// vitest 5 has no workspace files: this root config lists the packages as projects, each with its
// own vitest.config.ts, and test/ (the packed packages installed as a consumer would).
export default defineConfig({
  test: {
    projects: ["packages/*", "test"]
  }
})
