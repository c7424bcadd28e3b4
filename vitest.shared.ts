import { defineConfig } from "vitest/config"

// Workspace packages resolve each other to their TypeScript sources through this export condition
// (vitest 5 honours it in `ssr.resolve.conditions`; plain `resolve.conditions` has no effect here).
const sourceCondition = "@quiesce/source"

export default defineConfig({
  ssr: { resolve: { conditions: [sourceCondition] } },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
