import type { Command } from '../command.js';
import { build } from './build.js';
import { inspect } from './inspect.js';
import { keygen } from './keygen.js';
import { trustInit, trustRotate } from './trust.js';
import { verify } from './verify.js';

/** Every verb of the program, in the order `--help` lists them. */
export const commands: Command[] = [keygen, trustInit, trustRotate, build, inspect, verify];
