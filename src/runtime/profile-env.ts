// The one setting the server hands a worker process through its environment: where ONNX
// Runtime's profiles go (serve --profile-dir). Its own module, so that the server can name it
// without loading ONNX Runtime.
export const ORT_PROFILE_ENV = 'EASEL_WORKER_ORT_PROFILE_DIR';
