import { defineConfig } from "vitest/config"

// The repository-level tests: the packages as a user outside the monorepo gets them.
export default defineConfig({
  test: {
    name: "consumer",
    include: ["*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 600_000
  }
})
