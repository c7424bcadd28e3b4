/**
 * The `Manager` over `@quiesce/shared-service`.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Manager } from "./manager.ts"

export const layer: Layer.Layer<Manager> = Layer.succeed(Manager)(Manager.of({
  acquire: () => Effect.die("not yet"),
  status: () => Effect.die("not yet"),
  list: Effect.die("not yet"),
  stop: () => Effect.die("not yet")
}))
