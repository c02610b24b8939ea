// service: the contract both a cell and its callers import.
export { genomeJson, rpc, service, serviceCompatible } from './service.js';
export type {
  MethodDef,
  MethodInput,
  MethodInputView,
  MethodName,
  MethodOutput,
  MethodOutputView,
  RpcSpec,
  ServiceDef,
  ServiceMethods,
} from './types.js';
