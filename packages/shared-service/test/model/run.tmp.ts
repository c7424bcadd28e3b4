import { explore } from "./explore.ts"
const cfgs = JSON.parse(process.argv[2]!)
for (const c of cfgs) {
  try { const r = explore(c, { maxStates: 3_000_000 }); console.log(JSON.stringify(r)) }
  catch (e) { console.log(String((e as Error).message).slice(0, 4000)); process.exit(1) }
}
