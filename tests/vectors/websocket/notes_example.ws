# the example of the protocol notes: path, host and sub-protocol
# expect: complete 61
# field: resource = /websocket
# field: header_count = 2
# field: host = example.com
# field: sec-websocket-protocol = mqtt
# field: extensions = 
/websocket\r\n
host: example.com\r\n
sec-websocket-protocol: mqtt\r\n
