#!/usr/bin/env node
// `quiesce-demo-service`, the embedded demo service: dist/bin/demo-service.js when built, else its source (see launch.js).
import { launch } from "./launch.js"

await launch("bin/demo-service.js", "bin/demo-service.ts")
