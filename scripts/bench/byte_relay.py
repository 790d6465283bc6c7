# A TCP relay that counts the bytes each way: writes "UP DOWN" to OUT every second.
# usage: byte_relay.py LISTEN_PORT TARGET_PORT OUT
import asyncio, sys
listen, target, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
count = {"up": 0, "down": 0}
async def pipe(r, w, key):
    try:
        while True:
            data = await r.read(65536)
            if not data: break
            count[key] += len(data)
            w.write(data); await w.drain()
    except Exception: pass
    finally:
        try: w.close()
        except Exception: pass
async def handle(cr, cw):
    sr, sw = await asyncio.open_connection("127.0.0.1", target)
    await asyncio.gather(pipe(cr, sw, "up"), pipe(sr, cw, "down"))
async def report():
    while True:
        await asyncio.sleep(1)
        open(out, "w").write(f'{count["up"]} {count["down"]}\n')
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    asyncio.create_task(report())
    async with server: await server.serve_forever()
asyncio.run(main())
