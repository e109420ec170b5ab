// Package teemate is the Go side of /dev/teemate (kmod/teemate.ko): ioctl wrappers that share a warm
// enclave (owner), attach it into a fresh process at the owner's addresses, and take and give back TCS
// pages from the kernel-kept table. The structures mirror kmod/uapi/teemate.h byte for byte; a test
// compiles kmod/selftests/print_ioctls.c and checks the numbers and sizes.
//
// It runs on the untrusted host. Nothing it returns (addresses, slots) is trusted by the enclave, which
// identifies its caller by the TCS it runs on.
package teemate
