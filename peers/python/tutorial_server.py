# The socket tutorial's server, copied faithfully (comments translated), as a
# benchmark peer. Two changes, both marked:
#   1. the port comes from argv[1] (the tutorial hard-codes 8080);
#   2. the peer-address print line raised TypeError as written
#      (`'...'%addr[0],addr[1]` formats addr[0] alone); it is fixed here.
import socket
import sys

# 1. buy a phone
phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# 2. insert the SIM card
phone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
phone.bind(('127.0.0.1', int(sys.argv[1])))  # change 1: was 8080
# 3. switch on
phone.listen(5)
# 4. wait for calls
print('starting...')
while True:
    conn, addr = phone.accept()
    print('IP:%s,PORT%s' % (addr[0], addr[1]))  # change 2: was %addr[0],addr[1]
    # 5. talk
    while True:
        try:
            data = conn.recv(1024)
            if not data: break
            conn.send(data.upper())
        except Exception:
            break
    # 6. hang up
    conn.close()
# 7. switch off
phone.close()
