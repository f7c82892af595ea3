# Multi-stage build of the static clickagg binary. The build flags are the
# ones `make build` uses (CGO off, -trimpath, stripped); a test builds the
# same way and checks the result is static (cmd/clickagg TestStaticBuild).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/clickagg ./cmd/clickagg \
 && echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > /out/passwd \
 && mkdir -p /out/state

# scratch + CA certificates (for TLS to Kafka and PostgreSQL) + a nonroot
# user. No shell. The only writable path is the state volume, so the root
# filesystem can be mounted read-only.
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build --chown=65532:65532 /out/state /var/lib/clickagg
COPY --from=build /out/clickagg /usr/local/bin/clickagg
USER 65532:65532
ENV CLICKAGG_STATE_DIR=/var/lib/clickagg
VOLUME ["/var/lib/clickagg"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/clickagg"]
CMD ["run"]
