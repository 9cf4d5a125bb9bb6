# Shared by bench/compare.sh and bench/ensemble.sh.

ZK_CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar

# Installs Apache ZooKeeper 3.8 (Debian's zookeeper package) if it is missing.
ensure_zookeeper() {
  if [ ! -f /usr/share/java/zookeeper.jar ]; then
    echo "== installing Apache ZooKeeper (Debian package zookeeper) ==" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq zookeeper >/dev/null
  fi
}

# write_zk_log4j DIR: ZooKeeper logs errors only, to DIR/zookeeper-log4j.log.
write_zk_log4j() {
  cat >"$1/log4j.properties" <<LOG4J
log4j.rootLogger=ERROR, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=$1/zookeeper-log4j.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] - %m%n
LOG4J
}
