// A restricted pickle reader: just the opcodes and the handful of globals a PyTorch state_dict needs.
// It never executes, imports or looks up anything a file names: a GLOBAL outside the allowlist is refused on sight,
// with an error naming it. Values are plain data (PyTuple, PyDict, ...); the allowlisted "calls" are interpreted here.

export class PyTuple {
  constructor(readonly items: unknown[]) {}
}
export class PyList {
  constructor(readonly items: unknown[]) {}
}
/** A dict (dict or collections.OrderedDict). Keys are strings or numbers; insertion order is kept. */
export class PyDict {
  readonly map = new Map<string | number | boolean | null, unknown>();
  constructor(readonly ordered = false) {}
}
/** An allowlisted global, named. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
}
/** What a persistent id resolves to: a reference to a storage record, loaded later by the caller. */
export interface StorageRef {
  kind: 'storage';
  /** e.g. "FloatStorage" */
  storageType: string;
  key: string;
  location: string;
  /** Elements (of the storage's dtype). */
  numel: number;
}
/** The result of torch._utils._rebuild_tensor(_v2): a strided view of a storage. */
export class PyTensor {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
}

/** The storage classes a state_dict may name, with their element types. */
export const STORAGE_TYPES: Record<
  string,
  'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL'
> = {
  DoubleStorage: 'F64',
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

const ALLOWED_GLOBALS = new Set<string>([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_parameter',
  ...Object.keys(STORAGE_TYPES).map((s) => `torch.${s}`),
]);

export function allowedGlobals(): string[] {
  return [...ALLOWED_GLOBALS];
}

function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof PyTuple) return 'tuple';
  if (v instanceof PyList) return 'list';
  if (v instanceof PyDict) return 'dict';
  if (v instanceof PyGlobal) return v.qualname;
  if (v instanceof PyTensor) return 'tensor';
  if (v instanceof Uint8Array) return 'bytes';
  return typeof v;
}

function asInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v))
    throw new Error(`pickle: ${what} is ${describe(v)}, expected an integer`);
  return v;
}

function intTuple(v: unknown, what: string): number[] {
  if (!(v instanceof PyTuple)) throw new Error(`pickle: ${what} is ${describe(v)}, expected a tuple of integers`);
  return v.items.map((x) => {
    const n = asInt(x, what);
    if (n < 0) throw new Error(`pickle: ${what} has a negative entry ${n}`);
    return n;
  });
}

function dictKey(k: unknown): string | number | boolean | null {
  if (typeof k === 'string' || typeof k === 'number' || typeof k === 'boolean' || k === null) return k;
  throw new Error(`pickle: dict key of type ${describe(k)} is not supported in a state_dict`);
}

export interface UnpickleOptions {
  /** Resolve a persistent id (torch: ('storage', StorageClass, key, location, numel)). Default: the torch convention. */
  persistentLoad?: (pid: unknown) => unknown;
}

/** torch's persistent id convention -> StorageRef. */
export function torchPersistentLoad(pid: unknown): StorageRef {
  if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
    throw new Error(
      `pickle: persistent id ${describe(pid)} is not a torch storage reference ('storage', type, key, location, numel)`,
    );
  }
  const [, type, key, location, numel] = pid.items;
  if (!(type instanceof PyGlobal) || type.module !== 'torch' || !Object.hasOwn(STORAGE_TYPES, type.name)) {
    throw new Error(`pickle: storage type ${describe(type)} is not a supported torch storage class`);
  }
  if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(key) || key.includes('..')) {
    throw new Error(`pickle: storage key ${JSON.stringify(key)} is not a plain record name`);
  }
  if (typeof location !== 'string') throw new Error('pickle: storage location is not a string');
  const n = asInt(numel, 'storage size');
  if (n < 0) throw new Error(`pickle: storage size ${n} is negative`);
  return { kind: 'storage', storageType: type.name, key, location, numel: n };
}

/**
 * Unpickle `data` (protocols 2-5, binary opcodes only). Refuses any global outside the allowlist, any opcode that
 * could call arbitrary code (INST, OBJ, NEWOBJ on non-allowlisted classes, EXT*), and malformed input, always with
 * an Error, never by running anything. Runs in time linear in the input.
 */
export function unpickle(data: Uint8Array, opts: UnpickleOptions = {}): unknown {
  const persistentLoad = opts.persistentLoad ?? torchPersistentLoad;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const need = (n: number, what: string) => {
    if (n < 0 || pos + n > data.length)
      throw new Error(`pickle: truncated (${what} at offset ${pos} needs ${n} bytes)`);
  };
  const u8 = () => {
    need(1, 'byte');
    return data[pos++];
  };
  const u16 = () => {
    need(2, 'u16');
    const v = dv.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4, 'u32');
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = () => {
    need(4, 'i32');
    const v = dv.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8, 'u64');
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(data.length))
      throw new Error(`pickle: length ${v} exceeds the data (${data.length} bytes); corrupt`);
    return Number(v);
  };
  const take = (n: number, what: string) => {
    need(n, what);
    const b = data.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const str = (n: number, what: string) => {
    const b = take(n, what);
    try {
      return utf8.decode(b);
    } catch {
      throw new Error(`pickle: ${what} is not valid UTF-8; corrupt`);
    }
  };
  const latin1 = (b: Uint8Array) => {
    let s = '';
    for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
    return s;
  };
  const line = (what: string) => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) throw new Error(`pickle: truncated (${what} without a newline)`);
    const s = latin1(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = () => {
    if (stack.length === 0) throw new Error(`pickle: stack underflow at offset ${pos - 1}; corrupt`);
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) throw new Error(`pickle: stack underflow at offset ${pos - 1}; corrupt`);
    return stack[stack.length - 1];
  };
  const popMark = () => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) throw new Error(`pickle: no MARK to pop to at offset ${pos - 1}; corrupt`);
    stack = prev;
    return items;
  };
  const findGlobal = (module: string, name: string) => {
    const q = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(q)) {
      throw new Error(
        `pickle: the checkpoint asks for the Python global "${q}", which a state_dict never needs; refused ` +
          `(nothing in the file is executed or imported; only ${[...ALLOWED_GLOBALS].join(', ')} are accepted)`,
      );
    }
    return new PyGlobal(module, name);
  };
  const setItems = (d: unknown, kv: unknown[]) => {
    if (!(d instanceof PyDict)) throw new Error(`pickle: SETITEM(S) on a ${describe(d)}; corrupt`);
    if (kv.length % 2 !== 0) throw new Error('pickle: SETITEMS with an odd number of items; corrupt');
    for (let i = 0; i < kv.length; i += 2) d.map.set(dictKey(kv[i]), kv[i + 1]);
  };
  const appendItems = (l: unknown, items: unknown[]) => {
    if (!(l instanceof PyList)) throw new Error(`pickle: APPEND(S) on a ${describe(l)}; corrupt`);
    for (const x of items) l.items.push(x); // not push(...items): a huge APPENDS would overflow the call stack
  };
  const reduce = (f: unknown, args: unknown): unknown => {
    if (!(f instanceof PyGlobal))
      throw new Error(`pickle: REDUCE calls a ${describe(f)}; only allowlisted globals can be called`);
    if (!(args instanceof PyTuple))
      throw new Error(`pickle: REDUCE arguments are a ${describe(args)}, not a tuple; corrupt`);
    const a = args.items;
    switch (f.qualname) {
      case 'collections.OrderedDict': {
        const d = new PyDict(true);
        if (a.length === 0) return d;
        if (a.length === 1 && (a[0] instanceof PyList || a[0] instanceof PyTuple)) {
          for (const kv of (a[0] as PyList).items) {
            if (!(kv instanceof PyTuple) || kv.items.length !== 2)
              throw new Error('pickle: OrderedDict items must be pairs');
            d.map.set(dictKey(kv.items[0]), kv.items[1]);
          }
          return d;
        }
        throw new Error('pickle: OrderedDict called with unexpected arguments');
      }
      case 'torch._utils._rebuild_tensor_v2':
      case 'torch._utils._rebuild_tensor': {
        const min = f.name === '_rebuild_tensor' ? 4 : 6;
        if (a.length < min || a.length > 7) throw new Error(`pickle: ${f.qualname} called with ${a.length} arguments`);
        const st = a[0] as StorageRef;
        if (!st || typeof st !== 'object' || (st as StorageRef).kind !== 'storage') {
          throw new Error(`pickle: ${f.qualname} got a ${describe(a[0])} instead of a storage`);
        }
        const offset = asInt(a[1], 'tensor storage offset');
        if (offset < 0) throw new Error(`pickle: negative storage offset ${offset}`);
        const size = intTuple(a[2], 'tensor size');
        const stride = intTuple(a[3], 'tensor stride');
        if (size.length !== stride.length)
          throw new Error(`pickle: tensor size ${size} and stride ${stride} differ in rank`);
        return new PyTensor(st, offset, size, stride);
      }
      case 'torch._utils._rebuild_parameter': {
        if (a.length < 1 || !(a[0] instanceof PyTensor)) throw new Error('pickle: _rebuild_parameter without a tensor');
        return a[0];
      }
      default:
        throw new Error(`pickle: ${f.qualname} cannot be called (it is only accepted as a storage type)`);
    }
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw new Error('pickle: protocol newer than 5');
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || metastack.length !== 0)
          throw new Error('pickle: STOP with an unbalanced stack; corrupt');
        return stack[0];
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
      case 0x8b: {
        // LONG4
        const n = op === 0x8a ? u8() : u32();
        if (n > 8) throw new Error(`pickle: integer of ${n} bytes is too large for a state_dict`);
        const b = take(n, 'long');
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
        if (n > 0 && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
          throw new Error('pickle: integer out of the safe range');
        }
        stack.push(Number(v));
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8, 'float');
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(str(u32(), 'string'));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(u8(), 'string'));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(str(u64(), 'string'));
        break;
      case 0x54: // BINSTRING (python 2 str)
        stack.push(latin1(take(i32(), 'string')));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1(take(u8(), 'string')));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32(), 'bytes').slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8(), 'bytes').slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(take(u64(), 'bytes').slice());
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple([]));
        break;
      case 0x74: {
        // TUPLE (popMark replaces `stack`: take the items before touching it)
        const items = popMark();
        stack.push(new PyTuple(items));
        break;
      }
      case 0x85: // TUPLE1
        stack.push(new PyTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b, c]));
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push(new PyList([]));
        break;
      case 0x6c: {
        // LIST
        const items = popMark();
        stack.push(new PyList(items));
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new PyDict());
        break;
      case 0x64: {
        // DICT
        const d = new PyDict();
        const items = popMark();
        setItems(d, items);
        stack.push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) throw new Error(`pickle: memo entry ${i} used before it was set; corrupt`);
        stack.push(memo.get(i));
        break;
      }
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line('GLOBAL module');
        const name = line('GLOBAL name');
        stack.push(findGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string')
          throw new Error('pickle: STACK_GLOBAL needs two strings; corrupt');
        stack.push(findGlobal(module, name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const f = pop();
        stack.push(reduce(f, args));
        break;
      }
      case 0x62: {
        // BUILD: only the OrderedDict state (torch's `_metadata` attribute), which we ignore
        const state = pop();
        const obj = top();
        if (!(obj instanceof PyDict))
          throw new Error(`pickle: BUILD on a ${describe(obj)} is not supported in a state_dict`);
        if (!(state instanceof PyDict) && state !== null && !(state instanceof PyTuple)) {
          throw new Error(`pickle: BUILD state of type ${describe(state)} is not supported`);
        }
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistentLoad(pop()));
        break;
      case 0x81: // NEWOBJ
      case 0x92: {
        // NEWOBJ_EX
        if (op === 0x92) pop();
        pop();
        const cls = pop();
        throw new Error(`pickle: instantiating ${describe(cls)} (NEWOBJ) is not allowed in a state_dict`);
      }
      default: {
        const names: Record<number, string> = {
          0x69: 'INST',
          0x6f: 'OBJ',
          0x82: 'EXT1',
          0x83: 'EXT2',
          0x84: 'EXT4',
          0x50: 'PERSID',
          0x49: 'INT',
          0x4c: 'LONG',
          0x46: 'FLOAT',
          0x53: 'STRING',
          0x56: 'UNICODE',
          0x70: 'PUT',
          0x67: 'GET',
          0x96: 'BYTEARRAY8',
          0x97: 'NEXT_BUFFER',
          0x98: 'READONLY_BUFFER',
          0x8f: 'EMPTY_SET',
          0x90: 'ADDITEMS',
          0x91: 'FROZENSET',
        };
        const nm = names[op];
        throw new Error(
          nm
            ? `pickle: opcode ${nm} at offset ${pos - 1} is not supported (a torch state_dict does not use it)`
            : `pickle: unknown opcode 0x${op.toString(16).padStart(2, '0')} at offset ${pos - 1}; corrupt or not a pickle`,
        );
      }
    }
  }
}
