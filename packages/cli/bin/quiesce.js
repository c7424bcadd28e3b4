#!/usr/bin/env node
// `quiesce`: dist/quiesce.js (the bundle) when built, else src/bin.ts (see launch.js).
import { launch } from "./launch.js"

await launch("quiesce.js", "bin.ts")
