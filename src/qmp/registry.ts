// The command table of the control socket.  A command is data: a name, an
// argument schema and a handler.  The session looks commands up here and
// never knows any by name, so later features (snapshot, migrate) only add
// registrations.

import { QmpError, XenkvmError } from '../errors.js';
import type { JsonValue, QmpErrorBody } from './protocol.js';
import { CAPABILITIES_COMMAND } from './protocol.js';
import { arg, validateArgs, type ArgSchema, type ArgsOf } from './schema.js';

/**
 * Which session state a command runs in.  As in QEMU, a fresh client may run
 * only `qmp_capabilities`; after it, only ordinary commands.
 */
export type CommandPhase = 'negotiation' | 'command';

/** What a handler may do besides computing its answer. */
export interface CommandContext {
  /**
   * Aborted when the connection breaks or the server is destroyed; long
   * handlers may stop early.  EOF alone does not abort: a client that sends
   * its requests and half-closes (`socat`, shell pipes) still gets replies.
   */
  readonly signal: AbortSignal;
  /**
   * Runs `fn` once the reply has been handed to the socket (or the client has
   * gone).  For commands whose effect would cut the reply off, e.g. `quit`.
   */
  afterReply(fn: () => void | Promise<void>): void;
  /** Ends capability negotiation for this client; used by `qmp_capabilities` only. */
  enterCommandMode(): void;
}

export interface CommandDef<S extends ArgSchema> {
  readonly name: string;
  readonly description?: string;
  readonly args: S;
  /** Default 'command'. */
  readonly phase?: CommandPhase;
  /** Returning nothing answers `{}`, like QEMU's commands without a result. */
  readonly handler: (args: ArgsOf<S>, ctx: CommandContext) => Promise<JsonValue | void> | JsonValue | void;
}

/** A registration with its types erased, as the session sees it. */
export interface RegisteredCommand {
  readonly name: string;
  readonly description: string;
  readonly phase: CommandPhase;
  readonly args: ArgSchema;
  /** Validates `args`, runs the handler.  Throws what the handler throws. */
  run(args: JsonValue | undefined, ctx: CommandContext): Promise<JsonValue>;
}

const NAME_RE = /^[a-z][a-z0-9_-]{0,63}$/;

/** Capabilities a client may enable; none yet (QEMU's only one is 'oob'). */
const SUPPORTED_CAPABILITIES: readonly string[] = [];

export class CommandRegistry {
  readonly #commands = new Map<string, RegisteredCommand>();

  /** A registry holding the protocol's own commands: qmp_capabilities and query-commands. */
  constructor() {
    this.register({
      name: CAPABILITIES_COMMAND,
      description: 'end capability negotiation; must be the first command',
      phase: 'negotiation',
      args: { enable: arg.optional(arg.stringArray({ maxItems: 16 })) },
      handler: ({ enable }, ctx) => {
        for (const cap of enable ?? []) {
          if (!SUPPORTED_CAPABILITIES.includes(cap))
            throw new QmpError('GenericError', `Capability '${cap}' not available`);
        }
        ctx.enterCommandMode();
      },
    });
    this.register({
      name: 'query-commands',
      description: 'list the commands this server accepts',
      args: {},
      handler: () => this.list().map((c) => ({ name: c.name })),
    });
  }

  /** Adds a command; a second registration of one name is a programming error. */
  register<S extends ArgSchema>(def: CommandDef<S>): this {
    if (!NAME_RE.test(def.name)) throw new TypeError(`bad QMP command name ${JSON.stringify(def.name)}`);
    if (this.#commands.has(def.name)) throw new TypeError(`QMP command '${def.name}' is registered twice`);
    const { handler, args } = def;
    this.#commands.set(def.name, {
      name: def.name,
      description: def.description ?? '',
      phase: def.phase ?? 'command',
      args,
      run: async (input, ctx) => {
        const result = await handler(validateArgs(args, input), ctx);
        return result === undefined ? {} : result;
      },
    });
    return this;
  }

  lookup(name: string): RegisteredCommand | undefined {
    return this.#commands.get(name);
  }

  /** Ordinary commands, sorted by name (the negotiation command is not listed, as in QEMU). */
  list(): RegisteredCommand[] {
    return [...this.#commands.values()]
      .filter((c) => c.phase === 'command')
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}

/**
 * The reply body for anything a handler throws: our errors keep their message
 * (and a QmpError its class); anything else is a bug, reported without a stack.
 */
export function errorBodyFor(err: unknown): QmpErrorBody {
  if (err instanceof QmpError && (err.errorClass === 'GenericError' || err.errorClass === 'CommandNotFound')) {
    return { class: err.errorClass, desc: err.message };
  }
  if (err instanceof XenkvmError) return { class: 'GenericError', desc: err.message };
  const message = err instanceof Error ? err.message : String(err);
  return { class: 'GenericError', desc: `internal error: ${message}` };
}
