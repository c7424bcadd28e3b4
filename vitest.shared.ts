import { defineConfig } from "vitest/config"

// Workspace packages resolve each other to their TypeScript sources through this export condition.
export const sourceCondition = "@quiesce/source"

export default defineConfig({
  ssr: { resolve: { conditions: [sourceCondition] } },
  resolve: { conditions: [sourceCondition] },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
