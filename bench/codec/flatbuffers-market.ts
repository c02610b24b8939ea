/**
 * Hand-written equivalent of what `flatc --ts` generates for this schema (flatc is not an npm
 * dependency, so the accessors are written out here in its style: a reusable table object with
 * `__init`, vtable lookups through `__offset`, and `create*`/`add*` builder helpers):
 *
 *   table Order { symbol: string; amount: double; side: ubyte; seq: double; }
 *   table Batch { orders: [Order]; }
 *   table Blob  { data: [ubyte]; seq: double; }
 *
 * amount and seq are `double` so every format in the benchmark hands JavaScript numbers back
 * (flatbuffers' `ulong` reads as bigint).
 */
import { type Builder, ByteBuffer } from 'flatbuffers';

export class FbOrder {
  bb: ByteBuffer | null = null;
  bb_pos = 0;
  __init(i: number, bb: ByteBuffer): FbOrder {
    this.bb_pos = i;
    this.bb = bb;
    return this;
  }
  static getRoot(bb: ByteBuffer, obj?: FbOrder): FbOrder {
    return (obj || new FbOrder()).__init(bb.readInt32(bb.position()) + bb.position(), bb);
  }
  symbol(): string | null {
    const offset = this.bb!.__offset(this.bb_pos, 4);
    return offset ? (this.bb!.__string(this.bb_pos + offset) as string) : null;
  }
  amount(): number {
    const offset = this.bb!.__offset(this.bb_pos, 6);
    return offset ? this.bb!.readFloat64(this.bb_pos + offset) : 0;
  }
  side(): number {
    const offset = this.bb!.__offset(this.bb_pos, 8);
    return offset ? this.bb!.readUint8(this.bb_pos + offset) : 0;
  }
  seq(): number {
    const offset = this.bb!.__offset(this.bb_pos, 10);
    return offset ? this.bb!.readFloat64(this.bb_pos + offset) : 0;
  }
  static create(b: Builder, symbol: number, amount: number, side: number, seq: number): number {
    b.startObject(4);
    b.addFieldFloat64(3, seq, 0);
    b.addFieldFloat64(1, amount, 0);
    b.addFieldOffset(0, symbol, 0);
    b.addFieldInt8(2, side, 0);
    return b.endObject();
  }
}

export class FbBatch {
  bb: ByteBuffer | null = null;
  bb_pos = 0;
  __init(i: number, bb: ByteBuffer): FbBatch {
    this.bb_pos = i;
    this.bb = bb;
    return this;
  }
  static getRoot(bb: ByteBuffer, obj?: FbBatch): FbBatch {
    return (obj || new FbBatch()).__init(bb.readInt32(bb.position()) + bb.position(), bb);
  }
  orders(index: number, obj?: FbOrder): FbOrder | null {
    const offset = this.bb!.__offset(this.bb_pos, 4);
    return offset
      ? (obj || new FbOrder()).__init(
          this.bb!.__indirect(this.bb!.__vector(this.bb_pos + offset) + index * 4),
          this.bb!,
        )
      : null;
  }
  ordersLength(): number {
    const offset = this.bb!.__offset(this.bb_pos, 4);
    return offset ? this.bb!.__vector_len(this.bb_pos + offset) : 0;
  }
  static createOrdersVector(b: Builder, data: number[]): number {
    b.startVector(4, data.length, 4);
    for (let i = data.length - 1; i >= 0; i--) b.addOffset(data[i]);
    return b.endVector();
  }
  static create(b: Builder, orders: number): number {
    b.startObject(1);
    b.addFieldOffset(0, orders, 0);
    return b.endObject();
  }
}

export class FbBlob {
  bb: ByteBuffer | null = null;
  bb_pos = 0;
  __init(i: number, bb: ByteBuffer): FbBlob {
    this.bb_pos = i;
    this.bb = bb;
    return this;
  }
  static getRoot(bb: ByteBuffer, obj?: FbBlob): FbBlob {
    return (obj || new FbBlob()).__init(bb.readInt32(bb.position()) + bb.position(), bb);
  }
  dataArray(): Uint8Array | null {
    const offset = this.bb!.__offset(this.bb_pos, 4);
    return offset
      ? new Uint8Array(
          this.bb!.bytes().buffer,
          this.bb!.bytes().byteOffset + this.bb!.__vector(this.bb_pos + offset),
          this.bb!.__vector_len(this.bb_pos + offset),
        )
      : null;
  }
  seq(): number {
    const offset = this.bb!.__offset(this.bb_pos, 6);
    return offset ? this.bb!.readFloat64(this.bb_pos + offset) : 0;
  }
  static createDataVector(b: Builder, data: Uint8Array): number {
    return b.createByteVector(data);
  }
  static create(b: Builder, data: number, seq: number): number {
    b.startObject(2);
    b.addFieldFloat64(1, seq, 0);
    b.addFieldOffset(0, data, 0);
    return b.endObject();
  }
}

export { ByteBuffer };
