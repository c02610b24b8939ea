// service: the contract both a cell and its callers import.
export { genomeJson, rpc, service, serviceCompatible } from './service.js';
export type {
  AnyMethod,
  MethodDef,
  MethodInput,
  MethodInputView,
  MethodName,
  MethodOutput,
  MethodOutputView,
  MethodsOf,
  RpcSpec,
  ServiceDef,
  ServiceMethods,
} from './types.js';
