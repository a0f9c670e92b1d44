// Debug registers (struct kvm_debugregs): DR0-3, DR6, DR7.
import { array, u64 } from '../../vmstate/index.js';
import { kvm_debugregs } from '../structs.js';
import { bindStruct } from './bind.js';

export const debugregsFields = { db: array(u64(), 4), dr6: u64(), dr7: u64(), flags: u64() };

export const debugregsBinding = bindStruct(debugregsFields, kvm_debugregs);
