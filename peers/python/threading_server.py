# The tutorial's server logic (recv 1024, send upper) on the standard
# library's ThreadingTCPServer: one thread per client. A benchmark peer.
import socketserver
import sys


class Upper(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(1024)
            if not data:
                break
            self.request.send(data.upper())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


with Server(('127.0.0.1', int(sys.argv[1])), Upper) as server:
    server.serve_forever()
