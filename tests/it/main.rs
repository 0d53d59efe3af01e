//! Integration tests: the real binary over real loopback sockets. Each module
//! is one area of the contract.

#[path = "../support/mod.rs"]
mod support;

mod access;
mod activation;
mod bench;
mod bench_connect;
mod bench_output;
mod bench_rate;
mod bench_threads;
mod bench_ws;
mod browser;
mod cli;
mod connect;
mod faults;
mod haproxy;
mod library;
mod logs;
mod metrics;
mod proxy;
mod repl;
mod serve;
mod shutdown;
mod tls;
mod tutorial;
mod udp;
mod unicode;
mod unix;
mod websocket;
