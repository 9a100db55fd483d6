# every header g3proxy keeps, with two sec-websocket-extensions lines
# expect: complete 335
# field: resource = /chat
# field: header_count = 8
# field: host = server.example.com
# field: origin = http://example.com
# field: sec-websocket-key = dGhlIHNhbXBsZSBub25jZQ==
# field: sec-websocket-version = 13
# field: sec-websocket-accept = s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
# field: sec-websocket-protocol = chat
# field: extensions = permessage-deflate; client_max_window_bits|x-webkit-deflate-frame
/chat\r\n
host: server.example.com\r\n
origin: http://example.com\r\n
sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n
sec-websocket-version: 13\r\n
sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n
sec-websocket-protocol: chat\r\n
sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n
sec-websocket-extensions: x-webkit-deflate-frame\r\n
