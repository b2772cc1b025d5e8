import type { Command } from '../command.js';
import { build } from './build.js';
import { fetch } from './fetch.js';
import { importCommand } from './import.js';
import { inspect } from './inspect.js';
import { inventory } from './inventory.js';
import { keygen } from './keygen.js';
import { prune } from './prune.js';
import { pull } from './pull.js';
import { push } from './push.js';
import { recover } from './recover.js';
import { runtimeConfigCommand } from './runtime-config.js';
import { status } from './status.js';
import { apply, rollback } from './switch.js';
import { trustInit, trustResetTime, trustRotate, trustSetTime } from './trust.js';
import { verify } from './verify.js';

/** Every verb of the program, in the order `--help` lists them. */
export const commands: Command[] = [keygen, trustInit, trustRotate, trustResetTime, trustSetTime, build, inspect, verify, importCommand, apply, rollback, status, inventory, prune, recover, runtimeConfigCommand, fetch, push, pull];
