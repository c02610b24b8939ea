// Cell's native shared-memory primitives: sealed memfds mapped as SharedArrayBuffers, fd passing
// over Unix sockets (SCM_RIGHTS), peer credentials (SO_PEERCRED) and cross-process futex wait/wake.
//
// Why V8 appears next to node-addon-api: N-API on Node 20 cannot create a SharedArrayBuffer over
// external memory, and Atomics (the rings' memory ordering) only work on SharedArrayBuffers. The two
// helpers below convert between napi_value and v8::Local exactly as Node's own N-API layer does.
#include <napi.h>
#include <uv.h>
#include <v8.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <stddef.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

v8::Local<v8::Value> ToV8(napi_value v) {
  v8::Local<v8::Value> local;
  static_assert(sizeof(local) == sizeof(v), "napi_value and v8::Local must have the same size");
  memcpy(static_cast<void*>(&local), &v, sizeof(v));
  return local;
}

napi_value FromV8(v8::Local<v8::Value> local) { return reinterpret_cast<napi_value>(*local); }

Napi::Error SysError(Napi::Env env, const char* what, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(what) + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, what));
  return e;
}

int64_t ToInt(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a number");
  return v.As<Napi::Number>().Int64Value();
}

std::shared_ptr<v8::BackingStore> SharedStore(const Napi::Value& v) {
  v8::Local<v8::Value> local = ToV8(v);
  if (!local->IsSharedArrayBuffer()) throw Napi::TypeError::New(v.Env(), "expected a SharedArrayBuffer");
  return local.As<v8::SharedArrayBuffer>()->GetBackingStore();
}

// Address of the 32-bit word at `index` of a SharedArrayBuffer, bounds-checked.
uint32_t* WordAt(const std::shared_ptr<v8::BackingStore>& store, int64_t index, Napi::Env env) {
  if (index < 0 || static_cast<uint64_t>(index + 1) * 4 > store->ByteLength()) {
    throw Napi::RangeError::New(env, "futex word index out of range");
  }
  return static_cast<uint32_t*>(store->Data()) + index;
}

long Futex(uint32_t* addr, int op, uint32_t val, const struct timespec* ts) {
  // Not FUTEX_PRIVATE_FLAG: the word lives in a MAP_SHARED mapping another process waits on.
  return syscall(SYS_futex, addr, op, val, ts, nullptr, 0);
}

// memfdCreate(name, size) -> fd. Sized, then sealed so neither side can shrink it under the other
// (a shrink would turn the peer's reads into SIGBUS).
Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int64_t size = ToInt(info[1], "size");
  if (size <= 0) throw Napi::RangeError::New(env, "size must be positive");
  int fd = static_cast<int>(syscall(SYS_memfd_create, name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd < 0) throw SysError(env, "memfd_create", errno);
  if (ftruncate(fd, size) != 0) {
    int err = errno;
    close(fd);
    throw SysError(env, "ftruncate", err);
  }
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int err = errno;
    close(fd);
    throw SysError(env, "fcntl(F_ADD_SEALS)", err);
  }
  return Napi::Number::New(env, fd);
}

// mmapShared(fd, size, readOnly?) -> SharedArrayBuffer over a MAP_SHARED mapping. Refuses a file that
// is smaller than `size` or not sealed against shrinking: either would let the peer fault our reads.
// readOnly maps PROT_READ: a consumer's view of memory only its peer may write (a big slot).
// The mapping lives as long as any JS object references the buffer; the deleter unmaps it.
Napi::Value MmapShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(ToInt(info[0], "fd"));
  int64_t size = ToInt(info[1], "size");
  if (size <= 0) throw Napi::RangeError::New(env, "size must be positive");
  struct stat st;
  if (fstat(fd, &st) != 0) throw SysError(env, "fstat", errno);
  if (st.st_size < size) throw Napi::RangeError::New(env, "shared memory file is smaller than requested");
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    throw Napi::Error::New(env, "shared memory file is not sealed against shrinking");
  }
  const bool readOnly = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  void* p = mmap(nullptr, static_cast<size_t>(size), readOnly ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw SysError(env, "mmap", errno);
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> store = v8::SharedArrayBuffer::NewBackingStore(
      p, static_cast<size_t>(size), [](void* data, size_t length, void*) { munmap(data, length); }, nullptr);
  v8::Local<v8::SharedArrayBuffer> sab = v8::SharedArrayBuffer::New(isolate, std::move(store));
  return Napi::Value(env, FromV8(sab));
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(ToInt(info[0], "fd"));
  if (close(fd) != 0) throw SysError(info.Env(), "close", errno);
  return info.Env().Undefined();
}

// releaseMemory(fd, size): frees a dead connection's ring pages at once, even while a mapping (which
// the garbage collector unmaps later) still exists. Reads of the hole return zeros, never fault.
Napi::Value ReleaseMemory(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(ToInt(info[0], "fd"));
  int64_t size = ToInt(info[1], "size");
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, size) != 0) {
    throw SysError(info.Env(), "fallocate(PUNCH_HOLE)", errno);
  }
  return info.Env().Undefined();
}

// Page-aligned [start, end) of `offset, length` inside a SharedArrayBuffer's mapping, shrunk inwards.
bool PageRange(const std::shared_ptr<v8::BackingStore>& store, int64_t offset, int64_t length, char** from,
               size_t* bytes) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  if (offset < 0 || length < 0 || static_cast<uint64_t>(offset + length) > store->ByteLength()) return false;
  uintptr_t base = reinterpret_cast<uintptr_t>(store->Data());
  uintptr_t a = (base + static_cast<uintptr_t>(offset) + page - 1) & ~(page - 1);
  uintptr_t b = (base + static_cast<uintptr_t>(offset + length)) & ~(page - 1);
  *from = reinterpret_cast<char*>(a);
  *bytes = b > a ? b - a : 0;
  return true;
}

// trimShared(sab, offset, length): gives the shared pages of that range back (MADV_REMOVE punches
// them out of the memfd, for every process that maps it); later reads see zeros, later writes fault
// fresh pages in. Only whole pages inside the range are released. The ring producer calls it on its
// own idle ring, where the consumer reads nothing beyond what was published.
Napi::Value TrimShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto store = SharedStore(info[0]);
  char* from;
  size_t bytes;
  if (!PageRange(store, ToInt(info[1], "offset"), ToInt(info[2], "length"), &from, &bytes)) {
    throw Napi::RangeError::New(env, "range outside the shared buffer");
  }
  if (bytes > 0 && madvise(from, bytes, MADV_REMOVE) != 0) throw SysError(env, "madvise(MADV_REMOVE)", errno);
  return Napi::Number::New(env, static_cast<double>(bytes));
}

// unmapShared(sab): a dead connection's ring. The mapping is replaced in place by private anonymous
// memory, which drops this process's reference to the memfd at once (the file is freed as soon as no
// fd or other mapping holds it; the side that created it also punches its pages out through the fd).
// The SharedArrayBuffer stays valid: a late read sees zeros, a late write touches a private page; its
// deleter unmaps the range when the buffer is collected. The peer's view is untouched.
Napi::Value UnmapShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto store = SharedStore(info[0]);
  char* from;
  size_t bytes;
  if (!PageRange(store, 0, static_cast<int64_t>(store->ByteLength()), &from, &bytes)) {
    throw Napi::RangeError::New(env, "bad shared buffer");
  }
  if (reinterpret_cast<char*>(store->Data()) != from) throw Napi::Error::New(env, "shared buffer is not page-aligned");
  // Round the length up: mmap mapped whole pages.
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t whole = (store->ByteLength() + page - 1) & ~(page - 1);
  void* p = mmap(from, whole, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw SysError(env, "mmap(MAP_FIXED)", errno);
  return env.Undefined();
}

// sendFds(socketFd, fds[], payload): one sendmsg carrying `payload` and the fds as SCM_RIGHTS.
Napi::Value SendFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock = static_cast<int>(ToInt(info[0], "socketFd"));
  Napi::Array arr = info[1].As<Napi::Array>();
  Napi::Buffer<uint8_t> payload = info[2].As<Napi::Buffer<uint8_t>>();
  if (arr.Length() == 0 || arr.Length() > 16) throw Napi::RangeError::New(env, "send 1..16 fds");
  if (payload.Length() == 0) throw Napi::RangeError::New(env, "payload must not be empty");
  std::vector<int> fds(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) fds[i] = static_cast<int>(ToInt(arr.Get(i), "fd"));
  struct iovec iov = {payload.Data(), payload.Length()};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()), 0);
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  struct cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) throw SysError(env, "sendmsg", errno);
  if (static_cast<size_t>(n) != payload.Length()) throw Napi::Error::New(env, "sendmsg: short write");
  return Napi::Number::New(env, static_cast<double>(n));
}

struct Received {
  std::vector<int> fds;
  std::vector<uint8_t> payload;
  int err = 0;
  const char* what = nullptr;
  bool truncated = false;
};

void RecvFdsInto(int sock, Received& out) {
  std::vector<uint8_t> buf(4096);
  struct iovec iov = {buf.data(), buf.size()};
  char control[CMSG_SPACE(sizeof(int) * 16)];
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    out.err = errno;
    out.what = "recvmsg";
    return;
  }
  for (struct cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const int* p = reinterpret_cast<const int*>(CMSG_DATA(cm));
      for (size_t i = 0; i < count; i++) out.fds.push_back(p[i]);
    }
  }
  out.truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  buf.resize(static_cast<size_t>(n));
  out.payload = std::move(buf);
}

Napi::Value ReceivedToJs(Napi::Env env, Received& r) {
  if (r.err != 0) {
    for (int fd : r.fds) close(fd);
    throw SysError(env, r.what, r.err);
  }
  if (r.truncated) {
    for (int fd : r.fds) close(fd);
    throw Napi::Error::New(env, "recvmsg: too many file descriptors (control data truncated)");
  }
  Napi::Object o = Napi::Object::New(env);
  Napi::Array fds = Napi::Array::New(env, r.fds.size());
  for (size_t i = 0; i < r.fds.size(); i++) fds.Set(static_cast<uint32_t>(i), Napi::Number::New(env, r.fds[i]));
  o.Set("fds", fds);
  o.Set("payload", Napi::Buffer<uint8_t>::Copy(env, r.payload.data(), r.payload.size()));
  return o;
}

// recvFds(socketFd) -> { fds, payload }: one recvmsg on a socket nothing else reads.
Napi::Value RecvFds(const Napi::CallbackInfo& info) {
  Received r;
  RecvFdsInto(static_cast<int>(ToInt(info[0], "socketFd")), r);
  return ReceivedToJs(info.Env(), r);
}

Napi::Value PeerCredOf(Napi::Env env, int fd) {
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) throw SysError(env, "getsockopt(SO_PEERCRED)", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  return o;
}

// peerPath(fd) -> the filesystem path of the Unix socket `fd` is connected to ('' if unnamed).
Napi::Value PeerPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct sockaddr_un addr = {};
  socklen_t len = sizeof(addr);
  if (getpeername(static_cast<int>(ToInt(info[0], "fd")), reinterpret_cast<struct sockaddr*>(&addr), &len) != 0) {
    throw SysError(env, "getpeername", errno);
  }
  if (addr.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path) || addr.sun_path[0] == 0) {
    return Napi::String::New(env, "");
  }
  size_t n = strnlen(addr.sun_path, len - offsetof(struct sockaddr_un, sun_path));
  return Napi::String::New(env, std::string(addr.sun_path, n));
}

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  return PeerCredOf(info.Env(), static_cast<int>(ToInt(info[0], "fd")));
}

// fetchFds(path, request, timeoutMs) -> Promise<{ fds, payload, peer }>. Opens its own short-lived
// connection to a Unix socket, writes `request`, and receives one SCM_RIGHTS message, all on a worker
// thread. Node never reads this socket, so nothing races the recvmsg for the fds.
class FetchFdsWorker : public Napi::AsyncWorker {
 public:
  FetchFdsWorker(Napi::Env env, std::string path, std::vector<uint8_t> request, int timeoutMs)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)),
        request_(std::move(request)), timeoutMs_(timeoutMs) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return Fail("socket");
    struct timeval tv = {timeoutMs_ / 1000, (timeoutMs_ % 1000) * 1000};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    if (path_.size() >= sizeof(addr.sun_path)) {
      close(sock);
      err_ = ENAMETOOLONG;
      what_ = "connect";
      return;
    }
    memcpy(addr.sun_path, path_.data(), path_.size());
    if (connect(sock, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) return Fail("connect", sock);
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return Fail("getsockopt(SO_PEERCRED)", sock);
    peer_ = cred;
    size_t off = 0;
    while (off < request_.size()) {
      ssize_t n = send(sock, request_.data() + off, request_.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Fail("send", sock);
      off += static_cast<size_t>(n);
    }
    RecvFdsInto(sock, received_);
    close(sock);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      deferred_.Reject(SysError(env, what_, err_).Value());
      return;
    }
    try {
      Napi::Value v = ReceivedToJs(env, received_);
      Napi::Object peer = Napi::Object::New(env);
      peer.Set("pid", Napi::Number::New(env, peer_.pid));
      peer.Set("uid", Napi::Number::New(env, peer_.uid));
      peer.Set("gid", Napi::Number::New(env, peer_.gid));
      v.As<Napi::Object>().Set("peer", peer);
      deferred_.Resolve(v);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  void Fail(const char* what, int sock = -1) {
    err_ = errno;
    what_ = what;
    if (sock >= 0) close(sock);
  }
  Napi::Promise::Deferred deferred_;
  std::string path_;
  std::vector<uint8_t> request_;
  int timeoutMs_;
  int err_ = 0;
  const char* what_ = nullptr;
  struct ucred peer_ = {};
  Received received_;
};

Napi::Value FetchFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::Buffer<uint8_t> req = info[1].As<Napi::Buffer<uint8_t>>();
  int timeoutMs = static_cast<int>(ToInt(info[2], "timeoutMs"));
  if (timeoutMs <= 0) timeoutMs = 1;
  auto* w = new FetchFdsWorker(env, path, std::vector<uint8_t>(req.Data(), req.Data() + req.Length()), timeoutMs);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// futexWait(sab, index, expected, timeoutNs) -> 'ok' | 'not-equal' | 'timed-out'. Blocks the calling
// thread: for tools and tests; servers use FutexWatcher instead.
Napi::Value FutexWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto store = SharedStore(info[0]);
  uint32_t* addr = WordAt(store, ToInt(info[1], "index"), env);
  uint32_t expected = static_cast<uint32_t>(ToInt(info[2], "expected"));
  int64_t timeoutNs = info.Length() > 3 && info[3].IsNumber() ? ToInt(info[3], "timeoutNs") : -1;
  struct timespec ts;
  struct timespec* tsp = nullptr;
  if (timeoutNs >= 0) {
    ts.tv_sec = timeoutNs / 1000000000;
    ts.tv_nsec = timeoutNs % 1000000000;
    tsp = &ts;
  }
  long r = Futex(addr, FUTEX_WAIT, expected, tsp);
  if (r == 0) return Napi::String::New(env, "ok");
  if (errno == EAGAIN) return Napi::String::New(env, "not-equal");
  if (errno == ETIMEDOUT) return Napi::String::New(env, "timed-out");
  if (errno == EINTR) return Napi::String::New(env, "ok");
  throw SysError(env, "futex(FUTEX_WAIT)", errno);
}

// futexWake(sab, index, count) -> number of waiters woken (in any process mapping the word).
Napi::Value FutexWake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto store = SharedStore(info[0]);
  uint32_t* addr = WordAt(store, ToInt(info[1], "index"), env);
  int count = static_cast<int>(ToInt(info[2], "count"));
  long r = Futex(addr, FUTEX_WAKE, static_cast<uint32_t>(count), nullptr);
  if (r < 0) throw SysError(env, "futex(FUTEX_WAKE)", errno);
  return Napi::Number::New(env, static_cast<double>(r));
}

// FutexWatcher(sab, index, callback): a thread that sleeps in FUTEX_WAIT on a shared word while armed
// and calls `callback` on the JS thread when the word changes or is woken. The JS thread never blocks,
// and an idle connection costs a sleeping thread, not CPU.
class FutexWatcher : public Napi::ObjectWrap<FutexWatcher> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "FutexWatcher",
                       {InstanceMethod("arm", &FutexWatcher::Arm), InstanceMethod("close", &FutexWatcher::Close)});
  }

  FutexWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FutexWatcher>(info) {
    Napi::Env env = info.Env();
    store_ = SharedStore(info[0]);
    addr_ = WordAt(store_, ToInt(info[1], "index"), env);
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "cell-futex-watcher", 0, 1);
    tsfn_.Unref(env);
    thread_ = std::thread([this] { Run(); });
  }

  ~FutexWatcher() override { Stop(); }

 private:
  void Run() {
    for (;;) {
      uint32_t expected;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return armed_ || stop_; });
        if (stop_) return;
        armed_ = false;
        expected = expected_;
      }
      for (;;) {
        long r = Futex(addr_, FUTEX_WAIT, expected, nullptr);
        if (stop_.load()) return;
        if (r == 0 || errno == EAGAIN) break;
        if (errno != EINTR) break;
      }
      if (stop_.load()) return;
      tsfn_.NonBlockingCall(CallBack);
    }
  }

  // A JS exception from the callback surfaces as an uncaught exception; a call that arrives while the
  // environment is shutting down (the watcher does not keep the loop alive) is dropped.
  static void CallBack(Napi::Env env, Napi::Function callback) {
    if (env == nullptr || callback.IsEmpty()) return;
    napi_value undefined;
    napi_value result;
    if (napi_get_undefined(env, &undefined) != napi_ok) return;
    // Plain N-API call: a thrown exception stays pending and Node reports it as uncaught.
    napi_call_function(env, undefined, callback, 0, nullptr, &result);
  }

  // arm(expected): sleep until the word differs from `expected` (or a wake), then call back once.
  Napi::Value Arm(const Napi::CallbackInfo& info) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return info.Env().Undefined();
      expected_ = static_cast<uint32_t>(ToInt(info[0], "expected"));
      armed_ = true;
    }
    cv_.notify_one();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      stop_ = true;
    }
    cv_.notify_one();
    // The waiter may be inside FUTEX_WAIT: wake every waiter on the word; peers treat wakes as hints.
    while (thread_.joinable()) {
      Futex(addr_, FUTEX_WAKE, INT32_MAX, nullptr);
      if (thread_.joinable()) {
        thread_.join();
      }
    }
    tsfn_.Release();
  }

  std::shared_ptr<v8::BackingStore> store_;
  uint32_t* addr_ = nullptr;
  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false;
  uint32_t expected_ = 0;
  std::atomic<bool> stop_{false};
};

// eventfdCreate() -> fd: a ring's doorbell. The consumer watches it in its event loop (FdWatcher); the
// producer writes to it only when the consumer said it is going to sleep.
Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) throw SysError(info.Env(), "eventfd", errno);
  return Napi::Number::New(info.Env(), fd);
}

// eventfdSignal(fd): adds 1 to the counter (never blocks: a full counter already means "wake up").
Napi::Value EventfdSignal(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(ToInt(info[0], "fd"));
  uint64_t one = 1;
  ssize_t n;
  do n = write(fd, &one, sizeof(one));
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) throw SysError(info.Env(), "write(eventfd)", errno);
  return info.Env().Undefined();
}

// FdWatcher(fd, callback): calls `callback` on the JS thread whenever the eventfd becomes readable,
// after draining it. Lives in the event loop (uv_poll), so a wake-up is one context switch, like a
// socket read; it does not keep the process alive.
class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "FdWatcher", {InstanceMethod("close", &FdWatcher::Close)});
  }

  FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    Napi::Env env = info.Env();
    fd_ = static_cast<int>(ToInt(info[0], "fd"));
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    context_ = std::make_unique<Napi::AsyncContext>(env, "cell-fd-watcher");
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no event loop");
    handle_ = new uv_poll_t;
    handle_->data = this;
    int r = uv_poll_init(loop, handle_, fd_);
    if (r != 0) {
      delete handle_;
      handle_ = nullptr;
      throw Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(r));
    }
    uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
    uv_poll_start(handle_, UV_READABLE, OnReadable);
  }

  ~FdWatcher() override { Stop(); }

 private:
  static void OnReadable(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<FdWatcher*>(handle->data);
    if (self == nullptr) return;
    // One read takes the whole counter (not a semaphore eventfd); a write after it makes the fd
    // readable again, so a second read would only cost a system call that fails with EAGAIN.
    uint64_t count;
    ssize_t n;
    do n = read(self->fd_, &count, sizeof(count));
    while (n < 0 && errno == EINTR);
    Napi::Env env = self->callback_.Env();
    Napi::HandleScope scope(env);
    try {
      // MakeCallback drains the microtask queue afterwards, like any I/O callback.
      self->callback_.MakeCallback(env.Global(), {}, *self->context_);
    } catch (const Napi::Error& e) {
      e.ThrowAsJavaScriptException();
    }
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }

  void Stop() {
    if (handle_ == nullptr) return;
    uv_poll_stop(handle_);
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
    // The callback is a strong reference from this native object to a closure that usually holds the
    // watcher's own JS wrapper (the channel owns both): kept after close, that cycle through a
    // persistent handle would keep the wrapper, the closure and everything they reach (a connection's
    // rings and session) alive for the life of the process.
    callback_.Reset();
  }

  int fd_ = -1;
  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> context_;
};

// ------------------------------------------------------------------ recycled memory for big copies
//
// A decoded big `bytes` field must be the receiver's own memory (the peer may rewrite a shared slot),
// so it is one copy. Copied into fresh memory, every page of it faults on first touch: on a VM that
// cost ~9 ms per MiB against ~60 µs for the copy itself. takeCopy therefore copies into chunks it
// recycles: an ArrayBuffer's chunk returns to the pool when the garbage collector frees the buffer,
// and the next copy of that size class reuses its pages, already faulted in.

// Start address of a typed array's bytes (any backing: plain, shared, external).
char* ViewBytes(v8::Local<v8::ArrayBufferView> view) {
  return static_cast<char*>(view->Buffer()->GetBackingStore()->Data()) + view->ByteOffset();
}

struct CopyPool {
  std::mutex mutex;
  // Idle chunks per size class (the index ChunkFor gives), and their total bytes.
  std::vector<std::vector<void*>> idle = std::vector<std::vector<void*>>(64);
  size_t idleBytes = 0;
  size_t liveChunks = 0;
  // Chunks mapped fresh (no idle chunk of their class) and taken from the pool, since start.
  size_t mapped = 0;
  size_t reused = 0;
};

// Never destroyed: a buffer may be freed (its deleter run) during process teardown, on any thread.
CopyPool& Pool() {
  static CopyPool* pool = new CopyPool();
  return *pool;
}

// Idle bytes kept for reuse; a chunk freed beyond this is unmapped.
constexpr size_t kPoolIdleMax = 128u << 20;
constexpr size_t kPoolMinChunk = 64u << 10;

// Chunk size for `length`: 64 KiB, or the next of 1, 1.25, 1.5, 1.75 × a power of two (≤ 25 % slack).
size_t ChunkFor(size_t length, size_t* cls) {
  if (length <= kPoolMinChunk) {
    *cls = 0;
    return kPoolMinChunk;
  }
  size_t k = 63 - static_cast<size_t>(__builtin_clzll(static_cast<unsigned long long>(length - 1)));
  size_t base = size_t{1} << k;
  size_t step = base >> 2;
  size_t quarters = (length - base + step - 1) / step;  // 1..4
  *cls = (k - 16) * 4 + quarters;
  return base + quarters * step;
}

// The chunk size of class `cls` (the inverse of ChunkFor).
size_t ClassSize(size_t cls) {
  if (cls == 0) return kPoolMinChunk;
  size_t base = size_t{1} << ((cls - 1) / 4 + 16);
  return base + ((cls - 1) % 4 + 1) * (base >> 2);
}

struct Chunk {
  void* data;
  size_t size;
  size_t cls;
};

void GiveBack(void*, size_t, void* hint) {
  Chunk* c = static_cast<Chunk*>(hint);
  CopyPool& pool = Pool();
  bool keep = false;
  {
    std::lock_guard<std::mutex> lock(pool.mutex);
    pool.liveChunks--;
    if (pool.idleBytes + c->size <= kPoolIdleMax && c->cls < pool.idle.size()) {
      pool.idle[c->cls].push_back(c->data);
      pool.idleBytes += c->size;
      keep = true;
    }
  }
  if (!keep) munmap(c->data, c->size);
  delete c;
}

// takeCopy(view, offset, length) -> ArrayBuffer of `length` bytes holding view[offset, offset + length),
// in recycled memory (see above). A plain ArrayBuffer: nothing else maps it.
Napi::Value TakeCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  v8::Local<v8::Value> src = ToV8(info[0]);
  if (!src->IsArrayBufferView()) throw Napi::TypeError::New(env, "expected a typed array");
  v8::Local<v8::ArrayBufferView> view = src.As<v8::ArrayBufferView>();
  int64_t offset = ToInt(info[1], "offset");
  int64_t length = ToInt(info[2], "length");
  if (offset < 0 || length <= 0 || static_cast<uint64_t>(offset + length) > view->ByteLength()) {
    throw Napi::RangeError::New(env, "range outside the typed array");
  }
  const char* bytes = ViewBytes(view) + offset;
  size_t cls;
  size_t size = ChunkFor(static_cast<size_t>(length), &cls);
  void* data = nullptr;
  CopyPool& pool = Pool();
  {
    std::lock_guard<std::mutex> lock(pool.mutex);
    if (cls < pool.idle.size() && !pool.idle[cls].empty()) {
      data = pool.idle[cls].back();
      pool.idle[cls].pop_back();
      pool.idleBytes -= size;
      pool.reused++;
    } else {
      pool.mapped++;
    }
    pool.liveChunks++;
  }
  if (data == nullptr) {
    // Populated at once: cheaper than faulting the pages in one by one during the copy.
    data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (data == MAP_FAILED) {
      std::lock_guard<std::mutex> lock(pool.mutex);
      pool.liveChunks--;
      throw SysError(env, "mmap", errno);
    }
  }
  memcpy(data, bytes, static_cast<size_t>(length));
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> store =
      v8::ArrayBuffer::NewBackingStore(data, static_cast<size_t>(length), GiveBack, new Chunk{data, size, cls});
  return Napi::Value(env, FromV8(v8::ArrayBuffer::New(isolate, std::move(store))));
}

// copyInto(target, offset, source): memcpy of the whole source to target[offset…]. V8 copies between
// typed arrays of which one is shared byte by byte unless both sit at the same alignment (a frame's
// payload starts 12 bytes into its slot); memcpy does not care.
Napi::Value CopyInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  v8::Local<v8::Value> to = ToV8(info[0]);
  v8::Local<v8::Value> from = ToV8(info[2]);
  if (!to->IsArrayBufferView() || !from->IsArrayBufferView()) throw Napi::TypeError::New(env, "expected typed arrays");
  v8::Local<v8::ArrayBufferView> target = to.As<v8::ArrayBufferView>();
  v8::Local<v8::ArrayBufferView> source = from.As<v8::ArrayBufferView>();
  int64_t offset = ToInt(info[1], "offset");
  size_t length = source->ByteLength();
  if (offset < 0 || static_cast<uint64_t>(offset) + length > target->ByteLength()) {
    throw Napi::RangeError::New(env, "source does not fit the target at that offset");
  }
  if (length > 0) memmove(ViewBytes(target) + offset, ViewBytes(source), length);
  return env.Undefined();
}

// trimCopyPool() -> bytes unmapped: the idle chunks go back to the system (the pool was quiet).
Napi::Value TrimCopyPool(const Napi::CallbackInfo& info) {
  std::vector<std::vector<void*>> idle(Pool().idle.size());
  size_t freed = 0;
  {
    std::lock_guard<std::mutex> lock(Pool().mutex);
    idle.swap(Pool().idle);
    freed = Pool().idleBytes;
    Pool().idleBytes = 0;
  }
  for (size_t cls = 0; cls < idle.size(); cls++) {
    for (void* p : idle[cls]) munmap(p, ClassSize(cls));
  }
  return Napi::Number::New(info.Env(), static_cast<double>(freed));
}

// copyPoolStats() -> {idleBytes, liveChunks, mapped, reused} (tests and metrics).
Napi::Value CopyPoolStats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  std::lock_guard<std::mutex> lock(Pool().mutex);
  o.Set("idleBytes", Napi::Number::New(info.Env(), static_cast<double>(Pool().idleBytes)));
  o.Set("liveChunks", Napi::Number::New(info.Env(), static_cast<double>(Pool().liveChunks)));
  o.Set("mapped", Napi::Number::New(info.Env(), static_cast<double>(Pool().mapped)));
  o.Set("reused", Napi::Number::New(info.Env(), static_cast<double>(Pool().reused)));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate));
  exports.Set("mmapShared", Napi::Function::New(env, MmapShared));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("releaseMemory", Napi::Function::New(env, ReleaseMemory));
  exports.Set("trimShared", Napi::Function::New(env, TrimShared));
  exports.Set("unmapShared", Napi::Function::New(env, UnmapShared));
  exports.Set("sendFds", Napi::Function::New(env, SendFds));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds));
  exports.Set("fetchFds", Napi::Function::New(env, FetchFds));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred));
  exports.Set("peerPath", Napi::Function::New(env, PeerPath));
  exports.Set("futexWait", Napi::Function::New(env, FutexWait));
  exports.Set("futexWake", Napi::Function::New(env, FutexWake));
  exports.Set("FutexWatcher", FutexWatcher::Init(env));
  exports.Set("eventfdCreate", Napi::Function::New(env, EventfdCreate));
  exports.Set("eventfdSignal", Napi::Function::New(env, EventfdSignal));
  exports.Set("FdWatcher", FdWatcher::Init(env));
  exports.Set("takeCopy", Napi::Function::New(env, TakeCopy));
  exports.Set("copyInto", Napi::Function::New(env, CopyInto));
  exports.Set("trimCopyPool", Napi::Function::New(env, TrimCopyPool));
  exports.Set("copyPoolStats", Napi::Function::New(env, CopyPoolStats));
  return exports;
}

}  // namespace

NODE_API_MODULE(cell_native, Init)
