// Kernel peer credentials of a connected Unix socket, for workload attestation.
//   getPeerCred(fd)   -> {pid, uid, gid}    getsockopt(SO_PEERCRED): the caller of connect()
//   getPeerPidfd(fd)  -> pidfd | -1         getsockopt(SO_PEERPIDFD), Linux >= 6.5; -1 if unsupported
//   pidfdIsAlive(fd)  -> boolean            poll(): a pidfd turns readable when its process exits
//   closeFd(fd)
// Failures throw an Error carrying errno, code (e.g. "EBADF") and syscall.
#include <napi.h>
#include <uv.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace {

Napi::Value ThrowErrno(Napi::Env env, const char* syscall, int err) {
  Napi::Error error = Napi::Error::New(env, std::string(syscall) + ": " + std::strerror(err));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("code", Napi::String::New(env, uv_err_name(-err)));
  error.Set("syscall", Napi::String::New(env, syscall));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

// Reads argument 0 as a file descriptor; throws a TypeError and returns false if it is not one.
bool FdArgument(const Napi::CallbackInfo& info, int* fd) {
  if (info.Length() >= 1 && info[0].IsNumber()) {
    double value = info[0].As<Napi::Number>().DoubleValue();
    if (value >= 0 && value <= INT_MAX && std::floor(value) == value) {
      *fd = static_cast<int>(value);
      return true;
    }
  }
  Napi::TypeError::New(info.Env(), "expected a file descriptor (integer >= 0)").ThrowAsJavaScriptException();
  return false;
}

Napi::Value GetPeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArgument(info, &fd)) return env.Undefined();
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return ThrowErrno(env, "getsockopt(SO_PEERCRED)", errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, cred.pid));
  result.Set("uid", Napi::Number::New(env, cred.uid));
  result.Set("gid", Napi::Number::New(env, cred.gid));
  return result;
}

Napi::Value GetPeerPidfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArgument(info, &fd)) return env.Undefined();
  int pidfd = -1;
  socklen_t len = sizeof(pidfd);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0) {
    if (errno == ENOPROTOOPT || errno == EINVAL) return Napi::Number::New(env, -1);
    return ThrowErrno(env, "getsockopt(SO_PEERPIDFD)", errno);
  }
  // The kernel already sets close-on-exec; make sure, so no child process ever inherits it.
  fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  return Napi::Number::New(env, pidfd);
}

Napi::Value PidfdIsAlive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArgument(info, &fd)) return env.Undefined();
  struct pollfd p = {fd, POLLIN, 0};
  int ready;
  do {
    ready = poll(&p, 1, 0);
  } while (ready < 0 && errno == EINTR);
  if (ready < 0) return ThrowErrno(env, "poll", errno);
  if (p.revents & POLLNVAL) return ThrowErrno(env, "poll", EBADF);
  return Napi::Boolean::New(env, ready == 0);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArgument(info, &fd)) return env.Undefined();
  // On Linux the descriptor is released even when close() reports EINTR, so never retry.
  if (close(fd) != 0 && errno != EINTR) return ThrowErrno(env, "close", errno);
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("getPeerCred", Napi::Function::New(env, GetPeerCred, "getPeerCred"));
  exports.Set("getPeerPidfd", Napi::Function::New(env, GetPeerPidfd, "getPeerPidfd"));
  exports.Set("pidfdIsAlive", Napi::Function::New(env, PidfdIsAlive, "pidfdIsAlive"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  return exports;
}

}  // namespace

NODE_API_MODULE(peercred, Init)
